"""Engine: the BentoML service, deploy targets, routing, the prediction log and edge export."""
