//! One error context for the whole macro, as serde_derive's `Ctxt`: parsing and validation
//! both report into it, so the user sees every mistake at once.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;

/// Collects the errors of one `#[derive(Event)]` invocation.
///
/// [`Ctxt::finish`] must be called before the context is dropped, so that no error is lost.
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Self {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Reports `message`, pointing at `span`.
    pub fn error_spanned_at(&self, span: Span, message: impl Display) {
        self.syn_error(syn::Error::new(span, message));
    }

    /// Reports an error from `syn`.
    pub fn syn_error(&self, error: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after finish")
            .push(error);
    }

    /// Whether an error was reported so far.
    pub fn has_errors(&self) -> bool {
        self.errors.borrow().as_ref().is_some_and(|e| !e.is_empty())
    }

    /// All errors reported, combined into one.
    pub fn finish(self) -> Result<(), syn::Error> {
        let errors = self
            .errors
            .borrow_mut()
            .take()
            .expect("Ctxt finished twice");
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("Ctxt dropped without finish");
        }
    }
}
