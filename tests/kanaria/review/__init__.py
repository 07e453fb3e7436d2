"""Tests of the review path (issue 13, item 2): cases, sinks, the label puller."""
