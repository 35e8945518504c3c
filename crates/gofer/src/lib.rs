//! The gofer (work in progress).
