//! serversets-mcset (under construction).
