//! Portico's domain: the types every function and adapter share, the role policy, the port traits
//! adapters implement, and the error type that crosses every boundary.
//!
//! This crate does no I/O: no files, no network, no clocks other than values handed in.

pub mod audit;
pub mod csv;
pub mod domain;
pub mod error;
pub mod graph;
pub mod logs;
pub mod mqtt;
pub mod policy;
pub mod ports;
pub mod warehouse;

pub use domain::{
    Account, AccountKind, Alert, Caller, Document, DocumentStatus, EmailStatus, Instrument, Lot,
    LotUse, Notification, OutboundEmail, OutboxEntry, Product, QcTest, Recall, Role, Shipment,
    SignIn, User,
};
pub use error::{Error, FieldError, Result};
pub use graph::{Change, ChangeRecord, GraphStore};
pub use ports::{
    Accounts, Catalogue, CertificateData, CertificateRenderer, Delivery, Documents, FileUrls,
    Instruments, Mailer, NewAccount, Notifications, ObjectStore, Outbox, Page, PageRequest,
    Publisher, Queue, QueueMessage, QueueStats, Receive, SequenceGenerator, SequenceRange,
    StoredObject, Users,
};
pub use ports::{UploadCompleted, UploadEvents};
