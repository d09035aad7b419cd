//! Fuzz target `content`: see `cascade_fuzz::content`.
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::target!(cascade_fuzz::content);
