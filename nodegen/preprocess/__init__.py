"""ControlNet preprocessors that need no weights (:mod:`nodegen.preprocess.edges`), built on small
torch filters (:mod:`nodegen.preprocess.filters`)."""
