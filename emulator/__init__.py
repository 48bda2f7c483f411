"""The emulated printer, reference communication server and fleet runner."""
