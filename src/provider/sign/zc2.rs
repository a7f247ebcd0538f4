//! ZC2-HMAC-SHA256 (Zenlayer Cloud API 2.0). Filled in by the Zenlayer work.
