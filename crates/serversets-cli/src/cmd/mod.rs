//! One module per subcommand; each exposes `run(global, args, out)`.

pub(crate) mod dump;
pub(crate) mod locate;
pub(crate) mod ls;
pub(crate) mod register;
pub(crate) mod watch;
pub(crate) mod weight;
pub(crate) mod weights;
