//! Errors of the regularizers, classified the way PyTorch classifies them.

use crate::exception::TorchException;
use tch::TchError;

/// What went wrong: wrong kind of argument (TypeError), wrong value (ValueError), a graph, device
/// or engine problem (RuntimeError), an exception libtorch threw during a backward pass (kept
/// whole: a Python hook's own exception, a typed c10 error such as out-of-memory), or an error
/// raised by a caller's callback (an interrupt, a draw from the caller's generator).
#[derive(Debug)]
pub enum Error {
    Type(String),
    Value(String),
    Runtime(String),
    Torch(TorchException),
    Callback(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn type_error(msg: impl Into<String>) -> Self {
        Error::Type(msg.into())
    }

    pub fn value_error(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }

    pub fn runtime_error(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }

    /// Under torch.inference_mode() no backward pass can be recorded, and every regularizer
    /// runs some.
    pub fn inference_mode() -> Self {
        Error::runtime_error(
            "the regularizer cannot record its backward passes under torch.inference_mode(); \
             use torch.no_grad() for evaluation and logging instead",
        )
    }

    /// An exception from libtorch's engine: kept whole, unless it is one of the plain errors
    /// whose message we can make name the fix.
    pub fn from_torch(exception: TorchException) -> Self {
        match exception
            .is_c10_error()
            .then(|| hint(exception.message()))
            .flatten()
        {
            Some(message) => Error::Runtime(message),
            None => Error::Torch(exception),
        }
    }

    /// The message, as Python will show it.
    pub fn message(&self) -> String {
        match self {
            Error::Type(m) | Error::Value(m) | Error::Runtime(m) => m.clone(),
            Error::Torch(exception) => exception.message().to_owned(),
            Error::Callback(err) => err.to_string(),
        }
    }
}

/// libtorch's message for a misuse we can name the fix of, with that fix.
fn hint(message: &str) -> Option<String> {
    if message.contains("backward through the graph a second time") {
        return Some(format!(
            "the graph of y was already freed by an earlier backward pass; call the regularizer \
             before loss.backward(), or pass retain_graph=True to the earlier backward \
             (libtorch: {message})"
        ));
    }
    if message.contains("does not currently support double backward") {
        return Some(format!(
            "torch.compile does not support double backward, which this computation needs; run \
             the model uncompiled where it is used (for a compiled module, \
             `model._orig_mod(data)`) (libtorch: {message})"
        ));
    }
    None
}

/// libtorch appends a C++ stack trace to its messages; users need only the sentence before it.
pub fn first_paragraph(message: &str) -> &str {
    let end = ["\nException raised from", "\nframe #"]
        .iter()
        .filter_map(|marker| message.find(marker))
        .min()
        .unwrap_or(message.len());
    message[..end].trim()
}

impl From<TchError> for Error {
    fn from(err: TchError) -> Self {
        let message = match &err {
            TchError::Torch(message) => first_paragraph(message).to_owned(),
            other => other.to_string(),
        };
        Error::Runtime(hint(&message).unwrap_or(message))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A callback run between projections or iterations; it lets Ctrl-C through on long calls.
pub type Interrupt<'a> = &'a dyn Fn() -> Result<()>;
