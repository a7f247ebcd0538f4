//! Unit tests of the JD Cloud CPS provider (the emulator-backed ones live further down).
