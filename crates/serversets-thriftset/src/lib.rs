//! serversets-thriftset (under construction).
