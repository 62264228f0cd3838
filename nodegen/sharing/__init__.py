"""Sharing workflows: model references by hash (:mod:`nodegen.sharing.models`) and summaries of
what a workflow or PNG holds (:mod:`nodegen.sharing.info`)."""
