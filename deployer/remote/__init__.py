"""Remote side: shell scripts built as data (`shell`, `scripts`), and the transports that
run them (`ssh`, `recording`)."""
