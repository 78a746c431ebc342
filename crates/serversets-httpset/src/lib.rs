//! serversets-httpset (under construction).
