"""The pure core: the fleet, decisions and payload readers, with no I/O imports."""
