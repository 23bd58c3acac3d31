//! Cross-process tests.
