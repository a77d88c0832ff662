# The model's weights in flash, for an image built by `hark firmware build --frozen --model M`:
# that command appends CRC (the blob's CRC-32 field) and W (its weight array "w") to this file and
# freezes it. Start-up then loads the blob through load() below, and the weights, 28 KB of the
# default model, are read in place from flash instead of copied into the heap.
import blob


def load(path, skip=()):
    """blob.load, with the frozen W in place of the file's "w" (no other array's name starts with
    "w"), once the file is shown to be the model W came from."""
    b = blob.load(path, skip=skip + ("w",))
    with open(path, "rb") as f:
        crc = f.read(16)[12:]
    if crc != CRC:
        raise blob.BlobError("%s: the weights frozen into the firmware are another model's; deploy "
                             "the model the firmware was built with, or rebuild the firmware with "
                             "`hark firmware build --frozen --model %s`" % (path, path))
    b.arrays["w"] = W
    return b
