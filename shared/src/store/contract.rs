//! Store contract suite: placeholder until it lands.
