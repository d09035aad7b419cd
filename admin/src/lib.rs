//! `cascade-admin`: what an organisation's admins run, on their own
//! machine, to provision Cascade.
//!
//! - [`OrgCa`]: the organisation's certificate authority: make it, issue
//!   device certificates, sign trust lists and revocation lists, co-sign
//!   during a rotation.
//! - [`CaDir`]: the CA's directory (key, certificate, pinned partners,
//!   serials, revocations, audit log), with one method per `cascade admin`
//!   command that needs the CA.
//! - [`AdminKey`]: a person's own admin key, which the CA appoints so that
//!   the CA key can stay offline ([`OrgSigner`]: what signs requests).
//! - [`AdminClient`]: the relay's admin HTTP API.
//!
//! Devices verify what the CA makes with `cascade_core::identity`, which
//! also defines the formats; this crate only writes them. Front ends that
//! run on staff devices (the desktop app, the mobile bindings) depend on
//! `cascade-core` alone and so never link the code that issues
//! certificates.

mod admin_key;
mod ca;
mod ca_dir;
mod relay;

pub use admin_key::{AdminKey, OrgSigner};
pub use ca::OrgCa;
pub use ca_dir::{CaDir, CaDirError, EnrolmentCode, Registered, Rotation, WipeReport, WipeState};
pub use relay::{AdminClient, AdminError, IssueError, Issued};
