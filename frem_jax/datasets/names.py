"""The names of the datasets (`dataset.name`) and of their splits, for every module that lists them."""

NAMES = ('synthetic_cells', 'drosophila_vnc', 'mouse_liver', 'cell_folder')
SPLITS = ('train', 'validation', 'test')
# Read from a folder of image/mask pairs whose mask values `dataset.classes` maps to classes.
FOLDER_NAMES = ('mouse_liver', 'cell_folder')
