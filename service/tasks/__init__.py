"""One package per modality (``image`` today), each holding what differs by task: the model's
input geometry, decoding a request into model inputs with bounded cost, and the checks on what a
caller sends. Torch-free: serving imports these."""
