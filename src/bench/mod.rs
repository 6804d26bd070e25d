//! Measurement harness.
