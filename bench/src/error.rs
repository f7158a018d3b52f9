//! One error type for the whole tool: any error, boxed, with its message.

/// Any error the tool meets; printed as its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T> = std::result::Result<T, Error>;

/// An error made of a message.
pub fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(message.into().into())
}
