//! The one printer of human output.
