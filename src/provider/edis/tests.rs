//! Tests of the EDIS adapter.
