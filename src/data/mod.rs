//! IDX datasets.
