//! Fuzz target `groups`: see `cascade_fuzz::groups`.
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::target!(cascade_fuzz::groups);
