//! Why bytes are not the TPM structure they should be: the error of [`super::marshal`] and of
//! [`super::alg`]'s algorithm ids, kept apart so that neither imports the other for it.

/// Why bytes are not the TPM structure they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarshalError {
    /// The input ends inside a field.
    #[error("{0}: truncated")]
    Truncated(&'static str),
    /// Bytes are left after the structure (or inside a sized field).
    #[error("{what}: {extra} trailing bytes")]
    Trailing {
        /// The structure.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// An algorithm, curve or structure tag this server does not handle.
    #[error("{what}: unsupported value {value:#06x}")]
    Unsupported {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// A field whose value breaks the structure's rules.
    #[error("{0}")]
    Invalid(&'static str),
}
