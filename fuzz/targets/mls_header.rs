//! Fuzz target `mls_header`: see `cascade_fuzz::mls_header`.
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::target!(cascade_fuzz::mls_header);
