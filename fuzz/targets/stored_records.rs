//! Fuzz target `stored_records`: see `cascade_fuzz::stored_records`.
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::target!(cascade_fuzz::stored_records);
