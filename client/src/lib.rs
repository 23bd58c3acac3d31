//! Latchkey client.
