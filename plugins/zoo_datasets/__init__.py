"""CIFAR-10/100 from their python batches, Fashion-MNIST from idx files, image folders, and a sample."""
from zoo import Dataset, hookimpl


@hookimpl
def datasets():
    return [
        Dataset("cifar10", "zoo_datasets.loaders:cifar10", "CIFAR-10: 50,000 + 10,000 32x32 colour images, 10 classes",
                default=True),
        Dataset("cifar100", "zoo_datasets.loaders:cifar100", "CIFAR-100: 50,000 + 10,000 32x32 colour images, 100 "
                "fine classes", num_classes=100),
        Dataset("fashion-mnist", "zoo_datasets.loaders:fashion_mnist", "Fashion-MNIST: 60,000 + 10,000 28x28 "
                "grayscale images (padded to 32), 10 classes", channels=1),
        Dataset("fashion-mnist-sample", "zoo_datasets.loaders:fashion_mnist_sample", "5,000 + 1,000 real "
                "Fashion-MNIST images shipped with zoo (no download needed)", channels=1),
        Dataset("imagefolder", "zoo_datasets.loaders:image_folder", "your images: --data-dir with train/ and test/ "
                "(or val/), one folder per class; 32x32 unless --data-set image_size=N; streamed when larger than "
                "memory", num_classes=0),
        Dataset("webdataset", "zoo_datasets.loaders:webdataset", "WebDataset tar shards (train/*.tar, test/*.tar: "
                "<key>.jpg + <key>.cls), streamed; --data-set image_size=224", input_size=224, num_classes=0),
    ]
