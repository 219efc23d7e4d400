"""Text to keystrokes for real keyboard layouts (tables generated from XKB)."""
