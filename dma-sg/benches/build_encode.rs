// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
fn main() {}
