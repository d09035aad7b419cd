//! Fuzz target `relay_requests`: see `cascade_fuzz::relay_requests`.
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::target!(cascade_fuzz::relay_requests);
