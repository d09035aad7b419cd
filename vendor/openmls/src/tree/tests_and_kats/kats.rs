//! Tree test vectors

pub mod kat_encryption;
#[cfg(test)]
pub mod kat_message_protection;
#[cfg(test)]
pub mod secret_tree;
