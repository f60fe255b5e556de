//! Firmware-update extension commands and FUMO (filled in by its own change).
