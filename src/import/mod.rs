//! Store data brought in from files: the dealer's DMS export (customers, vehicles, service
//! history) and the parts and labour lists. Each importer reads a [`table::Table`] through a
//! [`table::Mapping`], checks every row before it writes any, and writes the whole file in one
//! transaction or nothing.

pub mod dms;
pub mod table;
