//! Data shared by every layer, with no I/O: what providers observe, the operations they track,
//! their reviews of a planned reinstall, and rate-limit figures. `manifest`, `plan`, `state`,
//! `provider` and `apply` all speak these types; none of them owns them.

pub mod field_issue;
pub mod limits;
pub mod observation;
pub mod operation;

pub use field_issue::FieldIssue;
pub use observation::{Observation, Observed, ServerStatus};
pub use operation::{Operation, OperationStatus, ReinstallReview};
