//! The checks iotivity-lite's real plgd DPS client makes on what the server sends, made by the
//! simulated device so that a server a real device would fail against fails here too, with the
//! reason (a [`StrictCheck`], counted apart from other failures in the summary).
//!
//! Each check names the iotivity-lite file and function it mirrors (iotivity-lite master,
//! `api/plgd/device-provisioning-client/`, `security/`, `api/`). The checks the load generator
//! made before, which go beyond what the real client checks (a UUID owner, a non-empty `cis`, a
//! non-empty ACL list), stay plain failures.

mod answers;
mod check;
mod creds;
pub(crate) mod rep;

pub(crate) use answers::{acls, cloud_configuration, ownership, time};
pub(crate) use check::DpsClock;
pub use check::{StrictCheck, Violation, MIN_FRAME_LEN};
pub(crate) use creds::{credentials, DeviceKey};
pub(crate) use rep::parse_root;
