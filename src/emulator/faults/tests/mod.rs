//! Tests of the fault menu.
