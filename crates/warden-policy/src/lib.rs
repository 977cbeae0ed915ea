//! The Policy Engine: Cedar policies and schema, the entities (built once per
//! agent and target) and the context (per request), and decisions with the
//! ids of the policies that made them. Policy-as-code test cases (`warden
//! policy test`) run through the same path as live requests. Normalised facts
//! (`context.facts`: recipients, paths, URLs, the amount) are derived here
//! from the raw arguments, so every enforcement point gets the same reading.
//! Pure: sources are handed in as text.

mod derive;
mod engine;
mod facts;
mod prepared;
mod testcase;

pub use derive::{AmountError, amount_of};
pub use engine::{BundleSources, PolicyBundle, PolicySource};
pub use facts::{AgentFacts, CallFacts, Findings, MonitorFacts, RequestFacts, ToolFacts};
pub use testcase::{CaseResult, TestCase, TestFile};

/// Errors in a policy bundle or test file; each names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("schema {file}: {message}")]
    Schema { file: String, message: String },
    #[error("policy file {file}: {message}")]
    Parse { file: String, message: String },
    #[error("policy bundle does not validate against the schema:\n{0}")]
    Validation(String),
    #[error("duplicate policy id {id:?} (in {file}); give each policy a unique @id(\"...\")")]
    DuplicateId { id: String, file: String },
    #[error("policy {id}: {message}")]
    Annotation { id: String, message: String },
    #[error("policy {id}: {message}")]
    Redact { id: String, message: String },
    #[error("test file {file}: {message}")]
    TestFile { file: String, message: String },
    #[error("building the request: {0}")]
    Request(String),
}
