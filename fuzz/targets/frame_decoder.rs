//! Fuzz target `frame_decoder`: see `cascade_fuzz::frame_decoder`.
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::target!(cascade_fuzz::frame_decoder);
