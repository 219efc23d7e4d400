"""Where requests become bytes on /dev/hidg0 and /dev/hidg1."""
