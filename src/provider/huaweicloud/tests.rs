//! Unit tests of the Huawei Cloud providers.
