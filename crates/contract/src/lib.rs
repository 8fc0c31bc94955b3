//! The CRM export contract (`docs/data-contract.md`): the seven entities, their columns and
//! Arrow schemas, and the reading and validation of export files.
//!
//! This crate knows nothing of storage or queries: it turns bytes into validated Arrow batches
//! and located rejections, and describes the tables the warehouse keeps.

#![warn(missing_docs)]

pub mod entity;
pub mod mapping;
pub mod reader;
pub mod values;

pub use entity::{Column, ColumnType, Entity, Rule};
pub use reader::{
    CHUNK_ROWS, DigestSet, FileError, FileReader, IdStatus, KeyRegistry, KnownIds, Rejection,
    RowValidator, ValidatedChunk, text_digest,
};
