//! Root names of the structures: `<prefix><name>`, within the runtime's 47-byte root names.

use crate::{Error, Result};

/// The longest root name the runtime keeps (`design/FORMAT.md` §3, the root catalog).
const ROOT_NAME_BYTES_MAX: usize = 47;

/// The longest name a structure whose roots start with `prefix` may have.
pub(crate) const fn name_bytes_max(prefix: &str) -> usize {
    ROOT_NAME_BYTES_MAX - prefix.len()
}

/// `<prefix><name>`, or a refusal naming `what` (e.g. "log") and the accepted lengths.
pub(crate) fn root_name(prefix: &str, what: &str, name: &str) -> Result<String> {
    let max = name_bytes_max(prefix);
    if name.is_empty() || name.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{what} names are 1 to {max} bytes, got {}",
            name.len()
        )));
    }
    Ok(format!("{prefix}{name}"))
}
