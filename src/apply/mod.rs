//! Apply: carry out a plan.
