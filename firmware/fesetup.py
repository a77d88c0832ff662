"""Set-up of the front end: the checks of the blob's front-end tables and feature spec, and the
tables and parameters frontend.FrontEnd's viper code reads. FrontEnd calls frontend(), which
removes this module from sys.modules when done, so its code and messages leave the heap as soon
as the front end is made.
"""
import sys
from array import array

# meta["frontend"] values in frontend.py's int32 parameter array, from its index 4 (_FFT_LIM) on
_PARAMS = ("fft_lim", "split_lim", "mel_bits", "log_floor", "log_top", "log_centre",
           "dct_in_shift", "log_table_bits", "log_interp_bits", "log_q", "n_mels", "n_mfcc", "hop")


def frontend(fe, meta, arrays):
    """Check the blob's front-end tables and give frontend.FrontEnd `fe` its tables and parameters;
    returns (n_mels, n_mfcc), the sizes of the buffers it makes."""
    half = fe.N_FFT // 2
    fm = meta.get("frontend")
    feat = meta.get("features")
    if not fm or not feat:
        raise ValueError("blob has no front-end tables or feature spec; "
                         "re-export the model with `hark export`")
    if fm["version"] != fe.VERSION or fm["n_fft"] != fe.N_FFT:
        raise ValueError("front end version %s / n_fft %s is not supported by this firmware "
                         "(knows %d / %d); update the firmware or re-export with `hark export`"
                         % (fm["version"], fm["n_fft"], fe.VERSION, fe.N_FFT))
    if fm["hop"] != feat["hop_length"] or fm["n_mfcc"] != feat["n_mfcc"]:
        raise ValueError("blob front end does not match its feature spec; "
                         "re-export with `hark export`")
    n_mels, n_mfcc = fm["n_mels"], fm["n_mfcc"]
    sizes = {"fe.window": half + 1, "fe.perm": half, "fe.twiddle": (half >> 1) + 1,
             "fe.mel_start": n_mels, "fe.mel_len": n_mels, "fe.mel_off": n_mels,
             "fe.log2": (1 << fm["log_table_bits"]) + 1, "fe.dct": n_mfcc * n_mels,
             "fe.dct_bias": n_mfcc, "fe.dct_shift": n_mfcc, "fe.mel_w": None}
    for name, size in sizes.items():
        if name not in arrays or (size is not None and len(arrays[name]) != size):
            raise ValueError("blob front-end table %s is missing or has the wrong size; "
                             "re-export with `hark export`" % name)
    if sum(arrays["fe.mel_len"]) != len(arrays["fe.mel_w"]):
        raise ValueError("blob mel tables disagree; re-export with `hark export`")
    fe._t = tuple(arrays[n] for n in (
        "fe.window", "fe.perm", "fe.twiddle", "fe.mel_start", "fe.mel_len", "fe.mel_w",
        "fe.mel_off", "fe.log2", "fe.dct", "fe.dct_bias", "fe.dct_shift"))
    st = array("i", bytes(4 * (4 + len(_PARAMS))))
    for i, key in enumerate(_PARAMS):
        st[4 + i] = fm[key]
    fe._st = st
    sys.modules.pop(__name__, None)     # set-up code: not needed while audio flows
    return n_mels, n_mfcc
