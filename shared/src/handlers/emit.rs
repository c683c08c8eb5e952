//! Internal emit: placeholder until the emit handler lands.
