"""GIF bytes, standard library only: parse a GIF's structure, split a data file into frames,
join GIFs losslessly, encode small GIFs.

``parse`` walks a GIF to its trailer; ``split`` finds the frames of an image-data file;
``join`` writes an animated GIF from single GIFs without decoding them; ``encode``
makes GIFs from pixels (the sample file and the tests).  Nothing here imports Dask,
fsspec or Pillow.
"""
