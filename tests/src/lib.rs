//! Cross-process test support.
